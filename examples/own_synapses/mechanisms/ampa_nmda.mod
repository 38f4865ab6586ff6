: os_AmpaNmda: a glutamatergic synapse with both receptor types behind one release site,
: written for neurosearch's own_synapses example.
:
: Each incoming event (NetCon weight in uS) opens
:   AMPA  with peak conductance  weight               (fast rise and decay)
:   NMDA  with peak conductance  weight * nmda_ratio  (slow rise and decay)
: Each conductance is the difference of two exponentials, scaled so that one event's
: peak equals its weight whatever the time constants. The NMDA part is blocked by
: extracellular magnesium as measured by Jahr & Stevens (1990):
:   B(v) = 1 / (1 + exp(-0.062 v) * mg / 3.57)     (v in mV, mg in mM)
: Both currents reverse at e (0 mV). The four exponentials are STATEs integrated with
: cnexp, so the mechanism runs with the fixed step and with CVode alike.

NEURON {
    POINT_PROCESS os_AmpaNmda
    RANGE ampa_rise, ampa_decay, nmda_rise, nmda_decay, nmda_ratio, e, mg
    RANGE g_ampa, g_nmda, i_ampa, i_nmda
    NONSPECIFIC_CURRENT i
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
    (mM) = (milli/liter)
}

PARAMETER {
    ampa_rise = 0.2 (ms)
    ampa_decay = 2.5 (ms)
    nmda_rise = 2.5 (ms)
    nmda_decay = 80 (ms)
    nmda_ratio = 0.7 (1)     : NMDA peak conductance per unit of AMPA peak conductance
    e = 0 (mV)
    mg = 1 (mM)
}

ASSIGNED {
    v (mV)
    i (nA)
    i_ampa (nA)
    i_nmda (nA)
    g_ampa (uS)
    g_nmda (uS)
    scale_ampa (1)
    scale_nmda (1)
}

STATE {
    ampa_a (uS)     : AMPA, the rising exponential (subtracted)
    ampa_b (uS)     : AMPA, the decaying exponential
    nmda_a (uS)
    nmda_b (uS)
}

INITIAL {
    : a rise as slow as the decay would make the difference of exponentials vanish
    if (ampa_rise > 0.999 * ampa_decay) { ampa_rise = 0.999 * ampa_decay }
    if (nmda_rise > 0.999 * nmda_decay) { nmda_rise = 0.999 * nmda_decay }
    scale_ampa = unit_peak(ampa_rise, ampa_decay)
    scale_nmda = unit_peak(nmda_rise, nmda_decay)
    ampa_a = 0
    ampa_b = 0
    nmda_a = 0
    nmda_b = 0
}

BREAKPOINT {
    SOLVE open METHOD cnexp
    g_ampa = ampa_b - ampa_a
    g_nmda = (nmda_b - nmda_a) * mg_block(v)
    i_ampa = g_ampa * (v - e)
    i_nmda = g_nmda * (v - e)
    i = i_ampa + i_nmda
}

DERIVATIVE open {
    ampa_a' = -ampa_a / ampa_rise
    ampa_b' = -ampa_b / ampa_decay
    nmda_a' = -nmda_a / nmda_rise
    nmda_b' = -nmda_b / nmda_decay
}

FUNCTION unit_peak(rise (ms), decay (ms)) (1) {
    : 1 / the peak of exp(-t/decay) - exp(-t/rise), reached at t_max
    LOCAL t_max
    t_max = log(decay / rise) * rise * decay / (decay - rise)
    unit_peak = 1 / (exp(-t_max / decay) - exp(-t_max / rise))
}

FUNCTION mg_block(v (mV)) (1) {
    mg_block = 1 / (1 + exp(-0.062 (/mV) * v) * (mg / 3.57 (mM)))
}

NET_RECEIVE (weight (uS)) {
    ampa_a = ampa_a + weight * scale_ampa
    ampa_b = ampa_b + weight * scale_ampa
    nmda_a = nmda_a + weight * nmda_ratio * scale_nmda
    nmda_b = nmda_b + weight * nmda_ratio * scale_nmda
}
