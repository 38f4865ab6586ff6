: ns_NMDA: NMDA-type excitatory synapse for neurosearch.
: Double-exponential conductance (slow rise and decay) gated by the
: Jahr & Stevens (1990) magnesium block
:     B(v) = 1 / (1 + exp(-0.062 v) * mg / 3.57)     (v in mV, mg in mM)
: The event weight (uS) is the single-event peak of the unblocked conductance.
:
: Speed: as in ns_AMPA, the exponentials decay by factors computed once in INITIAL
: and advanced once per step (exact for NEURON's fixed-step method, which
: neurosearch always uses; set dt before finitialize()).

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

ASSIGNED {
    v (mV)
    dt (ms)
    i (nA)
    g (uS)
    g_unblocked (uS)
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
    g_unblocked = g_fall - g_rise
    g = g_unblocked * mg_unblock(v)
    i = g * (v - e)
}

PROCEDURE decay() {
    g_rise = g_rise * keep_rise
    g_fall = g_fall * keep_fall
}

FUNCTION mg_unblock(v (mV)) (1) {
    mg_unblock = 1 / (1 + exp(-0.062 (/mV) * v) * mg / 3.57 (mM))
}

NET_RECEIVE (weight (uS)) {
    g_rise = g_rise + weight * peak_norm
    g_fall = g_fall + weight * peak_norm
}
