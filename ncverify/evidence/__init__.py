"""The evidence a verification gathers: optimisers from random starts, curvature, NC metrics
and certificates.  It never imports a claim."""
