"""Transform: changes its input visibly, so a chain of services shows in the job's results.

The value transformed is ``data["output"]`` when ``data`` is an upstream example service's result
(echo or transform), else ``data`` itself. Strings are upper-cased, numbers doubled, lists
reversed, objects transformed value by value (keys kept). The reply is
``{"output": <transformed>, "transformed_by": "transform", "steps": n}`` where ``n`` counts the
transforms applied so far along the chain. A stream job gets the upper-cased text word by word.
"""

from __future__ import annotations

from typing import Any

from infernet_service import (
    STREAM,
    InfernetService,
    ServiceJob,
    main,
    stream_delay,
    text_of,
    tokens_of,
)


def transform_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value * 2
    if isinstance(value, list):
        return [transform_value(item) for item in reversed(value)]
    if isinstance(value, dict):
        return {key: transform_value(item) for key, item in value.items()}
    return value


class TransformService(InfernetService):
    def run(self, job: ServiceJob) -> Any:
        data = job.data
        if job.destination == STREAM:
            return self.stream(tokens_of(text_of(data).upper()), stream_delay(data))
        steps = 1
        if isinstance(data, dict) and "output" in data:
            previous = data.get("steps", 0)
            steps += previous if isinstance(previous, int) else 0
            data = data["output"]
        return {"output": transform_value(data), "transformed_by": self.name, "steps": steps}


def make_service() -> TransformService:
    return TransformService(name="transform", models=("transform",))


if __name__ == "__main__":
    main(make_service())
