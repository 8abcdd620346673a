"""The trusted privacy kernel: sampling, clipping, noise, the step ledger, accounting and calibration.

Everything that a privacy claim depends on lives here, in modules named after the steps of
DP-SGD. Code outside this package may decide *how* to clip (a mechanism) or *what* to do with a
released gradient (an optimizer), but never adds noise or computes an epsilon itself.
"""
