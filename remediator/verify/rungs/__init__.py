"""One judge per rung of the verify ladder (remediator.verify.judge climbs them)."""
