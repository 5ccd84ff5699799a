"""Privacy of what the jobs publish. ``suppression``: primary suppression (no aggregate backed by ``min_devices``
distinct devices or fewer) and complementary suppression (no published parent minus its published children
reveals a suppressed count). Optional differential privacy on the published counts, in three modules:
``mechanisms`` (the maths: contribution bound and sensitivities, budget split, noise scales, the seeded noise of
one value; no Spark), ``noise`` (the same applied to Spark DataFrames: bounding each person-day's rows, noising
columns, fingerprinting a release's unnoised input) and ``ledger`` (the budget ledger: one file-locked charge per
release, refusing what would overspend a period's budget).
"""
