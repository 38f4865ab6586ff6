: os_GabaA: a GABA_A (chloride) synapse written for neurosearch's own_synapses example.
:
: Each incoming event (NetCon weight in uS) adds a conductance transient shaped as the
: difference of two exponentials (rise tau_rise, decay tau_decay), scaled so that one
: event's peak equals its weight. The current reverses at e = -80 mV, below rest, so
: the synapse hyperpolarises as well as shunts. cnexp integrates the two STATEs.

NEURON {
    POINT_PROCESS os_GabaA
    RANGE tau_rise, tau_decay, e, g
    NONSPECIFIC_CURRENT i
}

UNITS {
    (nA) = (nanoamp)
    (mV) = (millivolt)
    (uS) = (microsiemens)
}

PARAMETER {
    tau_rise = 0.5 (ms)
    tau_decay = 8 (ms)
    e = -80 (mV)
}

ASSIGNED {
    v (mV)
    i (nA)
    g (uS)
    scale (1)
}

STATE {
    rising (uS)
    falling (uS)
}

INITIAL {
    LOCAL t_max
    if (tau_rise > 0.999 * tau_decay) { tau_rise = 0.999 * tau_decay }
    t_max = log(tau_decay / tau_rise) * tau_rise * tau_decay / (tau_decay - tau_rise)
    scale = 1 / (exp(-t_max / tau_decay) - exp(-t_max / tau_rise))
    rising = 0
    falling = 0
}

BREAKPOINT {
    SOLVE decay METHOD cnexp
    g = falling - rising
    i = g * (v - e)
}

DERIVATIVE decay {
    rising' = -rising / tau_rise
    falling' = -falling / tau_decay
}

NET_RECEIVE (weight (uS)) {
    rising = rising + weight * scale
    falling = falling + weight * scale
}
