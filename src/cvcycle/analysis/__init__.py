"""Free-energy estimates, exact references for 2-D potentials, CV quality metrics and plots."""
