"""`interlock demo`: a whole mesh on one machine (orchestration in .run, the apps in .apps)."""
