"""Physical systems: analytic model potentials (molecular systems come with their engines)."""
