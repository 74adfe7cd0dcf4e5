"""What a workspace keeps: runs and their snapshots, learned models, the run lock."""
