"""Fleet analysis over many reports: outliers, baselines."""
