"""A judge for the zero-code interop run (`OTEL_LLM_EVAL_JUDGE=interop_judge:judge`): it records
its input as a JSON line in $INTEROP_JUDGE_OUT and scores 4. Standard library only."""

from __future__ import annotations

import json
import os
import threading

_lock = threading.Lock()


def judge(call):
    with _lock, open(os.environ["INTEROP_JUDGE_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"completion": call.completion, "finish_reason": call.finish_reason,
                              "model": call.model, "input_tokens": call.input_tokens,
                              "output_tokens": call.output_tokens}) + "\n")
    return 4.0
