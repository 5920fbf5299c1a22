"""The one driver of comparisons and figures: the learned methods for one training seed, the
report (intervals, cold start, tables, plots), the main job, the learner's comparison and the
testbed pipeline."""
