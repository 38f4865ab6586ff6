: ns_AMPA: AMPA-type excitatory synapse for neurosearch.
: Conductance is the difference of two exponentials (rise tau_r, decay tau_d),
: driven by NetCon events. The event weight (uS) is the conductance peak of a
: single event, so weights read as "peak conductance" whatever the taus.
:
: Speed: the two exponentials decay by factors computed once in INITIAL and are
: advanced once per step (SOLVE of a PROCEDURE), so there is no exp() per step.
: This is exact for NEURON's fixed-step method, which neurosearch always uses;
: dt must be set before finitialize() and not changed during a run.

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

ASSIGNED {
    v (mV)
    dt (ms)
    i (nA)
    g (uS)
    g_rise (uS)
    g_fall (uS)
    keep_rise (1)
    keep_fall (1)
    peak_norm (1)
}

INITIAL {
    LOCAL t_peak
    if (tau_r / tau_d > 0.9999) {
        tau_r = 0.9999 * tau_d
    }
    g_rise = 0
    g_fall = 0
    keep_rise = exp(-dt / tau_r)
    keep_fall = exp(-dt / tau_d)
    t_peak = log(tau_d / tau_r) * tau_r * tau_d / (tau_d - tau_r)
    peak_norm = 1 / (exp(-t_peak / tau_d) - exp(-t_peak / tau_r))
}

BREAKPOINT {
    SOLVE decay
    g = g_fall - g_rise
    i = g * (v - e)
}

PROCEDURE decay() {
    g_rise = g_rise * keep_rise
    g_fall = g_fall * keep_fall
}

NET_RECEIVE (weight (uS)) {
    g_rise = g_rise + weight * peak_norm
    g_fall = g_fall + weight * peak_norm
}
