COMMENT
Ih, the hyperpolarisation-activated cation current (HCN channels), with one gate:
open at rest and below, closing with depolarisation, slowly (tens of ms). Written for
neurosearch's small_pyramid example; denser in the distal apical dendrite, as in
layer-5 pyramidal cells, where it shortens and normalises the dendritic EPSPs.
ENDCOMMENT

NEURON {
    SUFFIX ex_ih
    NONSPECIFIC_CURRENT i
    RANGE gbar, g, erev
}

UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}

PARAMETER {
    gbar = 0.0001 (S/cm2)
    erev = -45 (mV)      : mixed Na/K reversal
    vhalf = -85 (mV)     : half activation
    slope = 8 (mV)       : activation steepness
    tau_min = 10 (ms)
    tau_max = 100 (ms)   : slowest near vhalf
    tau_width = 20 (mV)
}

ASSIGNED {
    v (mV)
    i (mA/cm2)
    g (S/cm2)
    m_inf
    tau (ms)
}

STATE { m }

INITIAL {
    rates(v)
    m = m_inf
}

BREAKPOINT {
    SOLVE states METHOD cnexp
    g = gbar * m
    i = g * (v - erev)
}

DERIVATIVE states {
    rates(v)
    m' = (m_inf - m) / tau
}

PROCEDURE rates(v (mV)) {
    m_inf = 1 / (1 + exp((v - vhalf) / slope))
    tau = tau_min + tau_max * exp(-((v - vhalf) / tau_width) ^ 2)
}
