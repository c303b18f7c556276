"""Workstation: records of runs, cost model, simulation, sweeps, projections, figures and the
README results block."""
