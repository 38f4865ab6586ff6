: ns_NMDA: NMDA-type excitatory synapse for neurosearch.
: Double-exponential conductance (slow rise and decay) gated by the
: Jahr & Stevens (1990) magnesium block
:     B(v) = 1 / (1 + exp(-0.062 v) * mg / 3.57)     (v in mV, mg in mM)
: The event weight (uS) is the single-event peak of the unblocked conductance.
:
: Speed: the two exponentials are STATEs integrated by cnexp (an exp() per step);
: this is the form CVode needs (integrator = "cvode"). The fixed-step copy in
: ../mechanisms advances them by precomputed factors instead and is ~1.8x faster
: there; both give the same fixed-step answer to rounding.

NEURON {
    POINT_PROCESS ns_NMDA
    RANGE tau_r, tau_d, e, mg, g, g_unblocked, i
    NONSPECIFIC_CURRENT i
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
    (mM) = (milli/liter)
}

PARAMETER {
    tau_r = 2 (ms)
    tau_d = 70 (ms)
    e = 0 (mV)
    mg = 1 (mM)
}

STATE {
    g_rise (uS)
    g_fall (uS)
}

ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    g_unblocked (uS)
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
    g_unblocked = g_fall - g_rise
    g = g_unblocked * mg_unblock(v)
    i = g * (v - e)
}

DERIVATIVE decay {
    g_rise' = -g_rise / tau_r
    g_fall' = -g_fall / tau_d
}

FUNCTION mg_unblock(v (mV)) (1) {
    mg_unblock = 1 / (1 + exp(-0.062 (/mV) * v) * mg / 3.57 (mM))
}

NET_RECEIVE (weight (uS)) {
    g_rise = g_rise + weight * peak_norm
    g_fall = g_fall + weight * peak_norm
}
