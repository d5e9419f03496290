"""Real-scale cost profiles and what they imply: ``profile`` (measure component costs at real shapes),
``costs`` (load and validate profiles, the shipped references, a profile from a benchmark run), ``project``
(each configuration's expected time under a profile, from a run's own traces), ``ratios`` (the wind tunnel's
dimensionless cost ratios beside the real pair's)."""
