"""mer_eval.reports"""
