"""The node's status page: ``GET /ui`` (a static page shipped in the package) and the one JSON
document it polls, ``GET /ui/state``, fed by a bounded server-side sampler."""
