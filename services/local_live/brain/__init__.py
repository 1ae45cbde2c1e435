"""The grounded tutor brain: deterministic, no weights.

It recognises what the learner asks (intent.py), decides which declared functions to call
(tutor.py), and composes the answer only from tool results and the context the gateway gave
(compose.py). Anything it was not given, it says it does not know.
"""
