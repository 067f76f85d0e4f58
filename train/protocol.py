"""The r1_zero protocol's fixed text, shared by the rollouts, the reward and the evaluation.

The prompt ends with `Assistant: <think>`; a formatted answer is `... </think> <answer> ... </answer>`.
Generation stops at `</answer>` and keeps it, in training and in evaluation alike.
"""

THINK_CLOSE = "</think>"
THINK_ANSWER = "</think> <answer>"  # the format gate: exactly one space between the two tags
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
STOP = ANSWER_CLOSE  # where generation stops (kept in the text)
MIN_NEW_TOKENS = 4  # an immediate EOS is not an answer
