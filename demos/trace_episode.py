"""Trace one planned episode step by step (CSV + PNG): the library lives in
planning.harness.diagnostics.trace_episode.

    python demos/trace_episode.py --model models/shipped --task pick_place --task-id 0
"""

from planning.harness.diagnostics.trace_episode import main

if __name__ == "__main__":
    main()
