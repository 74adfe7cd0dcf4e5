"""Data mining on the snapshot (DESIGN §2.11): natural clusters with profiles, and learned classification rules.

cluster.py / profiles.py: k-means clusters and what their members share (docs/clustering.md).
targets.py / learn.py / rule_text.py: classes given in advance, models that learn them, the tree's rules in
words and as rule expressions (docs/classification.md). labels.py: names and units of the measure columns.
"""
