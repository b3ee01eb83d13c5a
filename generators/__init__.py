"""mer_eval.generators"""
