"""mer_eval.metrics"""
