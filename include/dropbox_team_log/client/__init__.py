"""The Dropbox team API, read: HTTP transport, one call with its retry policy, the wire structs,
and the page reader that returns every event of a range exactly once.

Data flows one way through the package: client -> transform -> sync -> dataset -> analytics;
`tasks` (what the DAGs run) and `cli` (what people run) sit on top.
"""
