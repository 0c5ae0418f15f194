"""Model health at the edge: latency, errors, drift, data quality and accuracy
per model and window, computed from the parsed log documents.

The package map (pure statistics first, then what builds on them):

- ``histogram`` — ``LatencyHistogram``: fixed log-spaced buckets (1 % relative
  resolution), mergeable across windows and agents, percentiles, the
  Elasticsearch ``histogram`` field value. Also used for token counts and time
  to first token.
- ``drift`` — bins fixed by a reference (numeric deciles with open end bins,
  categorical top categories plus other), ``FeatureCounts`` with the data
  quality counters, ``psi`` and ``js_distance``.
- ``accuracy`` — ``ClassificationCounts`` (confusion counts, accuracy,
  precision/recall/F1 per class and macro) and ``RegressionCounts`` (MAE, RMSE)
  for predictions joined with delayed labels.
- ``windows`` — ``Windows``: tumbling event-time windows per ``ModelKey``,
  closed by an event-time watermark after the allowed lateness, deterministic
  across a crash and a restore; late events counted, never dropped.

These four modules are pure: no I/O, no logging, no threads; every state
converts to and from plain msgpack- and JSON-able values
(``to_state``/``from_state``) and merges exactly. Bad data never raises (it is
refused and counted); bad arguments and unreadable states raise ValueError,
which the caller translates (a checkpoint that cannot be read is a StateError
of the engine, not of these modules). Field extraction, configuration, the reference, the label join,
alerts and the window documents build on them in the other modules of this
package. User documentation: docs/health-statistics.md.
"""
