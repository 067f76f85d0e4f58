"""The entry points: training (train_trl), evaluation (evaluate) and the launcher (launch_plan, behind launch_trl.sh).

Installed as commands by `pip install -e .` (pyproject.toml's [project.scripts]): grpo-math-train, grpo-math-eval and
grpo-math-launch; the files also run as scripts (`python step3_GRPO/train_trl.py`) once the project is installed.
"""
