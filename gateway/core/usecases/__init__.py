"""Use cases: each RPC's decision and enforcement, without any transport; one module per feature.

The pattern is always the same: establish the caller's standing, decide with
pure functions (`gateway.core.rules`), record the decision in the audit log,
and only then release. Denials are recorded too, with the code that denied.
`gateway.core.app.Core` composes the features.
"""
