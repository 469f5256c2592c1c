"""Tools for method authors and for measuring: the method contract, the scaffold (and its templates),
the performance harness and parameter inspection (the generated method pages).
"""
