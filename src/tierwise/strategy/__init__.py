"""Differentiated strategies (差异化策略): what to do with each customer.

- `settings`: the `[[playbook]]` rules and the [strategy] section of tierwise.toml, and the default playbook.
- `playbook`: `apply_playbook`, which adds `strategy`, `next_action`, `service_level`, `channel`,
  `contact_every_days`, `budget_per_customer` and `action_reason` to a snapshot (first matching rule wins).
- `cross_sell`: categories that similar customers buy and this customer does not yet (交叉销售).
- `worklist`: the prioritised call list per sales rep, with the next action and cross-sell suggestions.

Docs: docs/strategy.md.
"""
