: ns_AMPA: AMPA-type excitatory synapse for neurosearch.
: Conductance is the difference of two exponentials (rise tau_r, decay tau_d),
: driven by NetCon events. The event weight (uS) is the conductance peak of a
: single event, so weights read as "peak conductance" whatever the taus.
:
: Speed: the two exponentials are STATEs integrated by cnexp (an exp() per step);
: this is the form CVode needs (integrator = "cvode"). The fixed-step copy in
: ../mechanisms advances them by precomputed factors instead and is ~1.8x faster
: there; both give the same fixed-step answer to rounding.

NEURON {
    POINT_PROCESS ns_AMPA
    RANGE tau_r, tau_d, e, g, i
    NONSPECIFIC_CURRENT i
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
}

PARAMETER {
    tau_r = 0.3 (ms)
    tau_d = 3.0 (ms)
    e = 0 (mV)
}

STATE {
    g_rise (uS)
    g_fall (uS)
}

ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    peak_norm (1)
}

INITIAL {
    LOCAL t_peak
    if (tau_r / tau_d > 0.9999) {
        tau_r = 0.9999 * tau_d
    }
    g_rise = 0
    g_fall = 0
    t_peak = log(tau_d / tau_r) * tau_r * tau_d / (tau_d - tau_r)
    peak_norm = 1 / (exp(-t_peak / tau_d) - exp(-t_peak / tau_r))
}

BREAKPOINT {
    SOLVE decay METHOD cnexp
    g = g_fall - g_rise
    i = g * (v - e)
}

DERIVATIVE decay {
    g_rise' = -g_rise / tau_r
    g_fall' = -g_fall / tau_d
}

NET_RECEIVE (weight (uS)) {
    g_rise = g_rise + weight * peak_norm
    g_fall = g_fall + weight * peak_norm
}
