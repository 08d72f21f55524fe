"""``mnas doctor``: what a user runs first on a new machine or cluster node.

``facts`` reports versions and devices; ``checks`` runs a short real check of every path this
machine can take (a proxy trial per precision and layout, the supernet's kill and resume, a
one-shot evaluation, export and measurement on each runtime, a latency service round trip,
and on a GPU the fast data path, packed trials and the proxy throughput), each ending in
pass, fail or not run, with its time and a one-line reason.
"""
