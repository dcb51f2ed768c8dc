"""The demo's simulated traffic: who asks what, which answer they get, how they react.

Pure and deterministic: `Story(seed, duration_seconds, rate_per_second)` yields the same sequence of
`Request`s for the same arguments, each with its planned time offset. Nothing here talks to the
network or to OpenTelemetry; `demo.app` turns requests into spans.

The story (offsets as fractions of the duration):
- 0.00 .. : baseline. Users are split 50/50 between the control support prompt and a better one
  (fewer refusals and off-topic answers). A three-arm bandit picks the model. Some requests are
  pairwise comparisons of two models shown side by side.
- DRIFT_AT: drift. Questions get about three times longer and a new topic appears.
- INCIDENT_AT: quality drop. The retrieval index "goes stale": most answers become refusals or
  non-answers, whatever the prompt or model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

DRIFT_AT = 0.45
INCIDENT_AT = 0.72

EXPERIMENT_ID = "support-prompt"
CONTROL = "control"
TREATMENT = "concise-v2"
BANDIT_ID = "model-router"
MODELS = ("gpt-4o-mini", "claude-3-5-haiku", "mistral-small")
PAIRWISE_ID = "pairwise-4o-mini-vs-mistral"
PAIRWISE_MODELS = ("gpt-4o-mini", "mistral-small")
SERVICE = "support-bot"

#: Chance that an answer is good, by prompt variant; model adds a delta.
PROMPT_QUALITY = {CONTROL: 0.50, TREATMENT: 0.85}
MODEL_QUALITY_DELTA = {"gpt-4o-mini": 0.0, "claude-3-5-haiku": 0.12, "mistral-small": -0.30}
#: During the incident every answer's chance of being good is multiplied by this.
INCIDENT_QUALITY_FACTOR = 0.25
#: Extra system-prompt tokens of each variant (the better prompt is longer, so it costs more).
SYSTEM_PROMPT_TOKENS = {CONTROL: 90, TREATMENT: 160}
MEDIAN_LATENCY_SECONDS = {"gpt-4o-mini": 0.9, "claude-3-5-haiku": 1.2, "mistral-small": 0.7}
FEEDBACK_RATE = 0.6         # share of answers that get a thumbs up/down
PAIRWISE_RATE = 0.2         # share of requests that are side-by-side comparisons
PII_RATE = 0.01             # share of good answers that leak an e-mail address (a safety check fires)
TIE_RATE = 0.6             # when both answers are alike, the user says "same" this often
POSITION_BIAS = 0.56        # when both answers are alike, the first shown wins this often
#: Assignment is per user; users make several requests each. SRM is tested on users (the
#: processor stamps a unit key per experiment), so a realistic user count does not raise false alarms.
USERS = 600

BASE_TOPICS = {
    "orders": [
        "Where is my order {n}?",
        "Can I change the delivery address of order {n}?",
        "My order {n} arrived damaged, what now?",
    ],
    "returns": [
        "How do I return a pair of shoes I bought last week?",
        "Is the return shipping free for order {n}?",
        "How long does a refund take after a return?",
    ],
    "account": [
        "How do I reset my password?",
        "Can I merge two accounts?",
        "How do I delete my account and my data?",
    ],
    "shipping": [
        "Do you ship to Norway?",
        "What does express shipping cost?",
        "Can I pick up my parcel at a store?",
    ],
}
#: The topic that appears with the drift, with long, detailed questions.
NEW_TOPIC = "subscription-billing"
NEW_TOPIC_QUESTIONS = [
    "I was charged twice for my annual subscription renewal on the same day, once on my credit card "
    "and once through the app store, and the second charge is still pending after a week. Can you "
    "explain what happened, cancel one of them and tell me when the refund will show up?",
    "My subscription was upgraded to the family plan without my consent when I added a second "
    "device, the invoice now shows a prorated amount I do not understand, and the cancellation page "
    "gives an error. Which plan am I on, what exactly was I billed for, and how do I go back?",
]
LONG_PREFIX = (
    "I have already tried the help center articles and the chat bot on the app, and I spoke to "
    "someone on the phone last Tuesday who said it would be fixed within two days, but nothing "
    "changed and I am getting frustrated. "
)

GOOD_ANSWERS = {
    "orders": "Your order {n} left our warehouse yesterday and is with the carrier. You can follow it "
              "from the Orders page; delivery is expected within two working days. If the parcel "
              "arrives damaged, reply with a photo and we will send a replacement at no cost.",
    "returns": "You can return any item within 30 days. Open Orders, choose the item, click Return "
               "and print the prepaid label; drop the parcel at any post office. The refund reaches "
               "your original payment method within five working days after we receive it.",
    "account": "Go to Settings, then Security, and choose Reset password; we send a link to your "
               "e-mail that is valid for one hour. Merging or deleting accounts is done from the "
               "same page under Account data, and takes effect within 24 hours.",
    "shipping": "We ship to most European countries, Norway included. Standard shipping is free "
                "above 50 EUR; express costs 9.90 EUR and arrives the next working day when you "
                "order before 2 pm. Store pickup is free and usually ready in two days.",
    NEW_TOPIC: "I can see two charges for your renewal: the app store one is the valid one, and the "
               "card charge is a duplicate that I have now cancelled. The refund appears on your "
               "statement within five working days, and you stay on your current plan until then.",
}
BAD_ANSWERS = (
    "I'm sorry, but I can't help with that.",
    "Please check our website.",
    "As an AI language model, I cannot access your account.",
    "I don't have that information.",
)
PII_SUFFIX = " If anything is unclear, write to our agent directly at jane.doe@example.com."


@dataclass(frozen=True)
class Answer:
    model: str
    text: str
    good: bool
    output_tokens: int
    latency_seconds: float
    finish_reason: str


@dataclass(frozen=True)
class Request:
    """One simulated user request, fully decided up front (so the run is reproducible)."""

    index: int
    offset_seconds: float        # planned time since the start of the story
    phase: str                   # baseline | drift | incident
    user_id: str
    session_id: str
    topic: str
    question: str
    input_tokens_base: int       # question tokens, without the system prompt
    pairwise: bool
    # Random draws used later, when the variant and model are known (they come from the
    # experiment and the bandit at run time). Drawing them here keeps the rng sequence fixed.
    quality_draw: float
    quality_draw_b: float
    feedback_draw: float
    thumbs_draw: float
    pii_draw: float
    latency_draw: float
    latency_draw_b: float
    position_draw: float
    choice_draw: float
    bad_answer_index: int


def phase_at(fraction: float) -> str:
    if fraction >= INCIDENT_AT:
        return "incident"
    if fraction >= DRIFT_AT:
        return "drift"
    return "baseline"


def _tokens(text: str) -> int:
    # ~1.3 tokens per word is close to what tiktoken gives for English prose.
    return max(1, round(len(text.split()) * 1.3))


class Story:
    """Deterministic request generator for one demo run."""

    def __init__(self, seed: int, duration_seconds: float, rate_per_second: float) -> None:
        if duration_seconds <= 0:
            raise ValueError(f"duration must be positive, got {duration_seconds}")
        if rate_per_second <= 0:
            raise ValueError(f"rate must be positive, got {rate_per_second}")
        self.seed = seed
        self.duration_seconds = float(duration_seconds)
        self.rate_per_second = float(rate_per_second)
        self._rng = random.Random(seed)

    @property
    def drift_at_seconds(self) -> float:
        return DRIFT_AT * self.duration_seconds

    @property
    def incident_at_seconds(self) -> float:
        return INCIDENT_AT * self.duration_seconds

    def requests(self) -> Iterator[Request]:
        rng = self._rng
        t = 0.0
        i = 0
        while True:
            t += rng.expovariate(self.rate_per_second)
            if t >= self.duration_seconds:
                return
            phase = phase_at(t / self.duration_seconds)
            user = rng.randrange(USERS)
            if phase != "baseline" and rng.random() < 0.4:
                topic = NEW_TOPIC
                question = rng.choice(NEW_TOPIC_QUESTIONS)
            else:
                topic = rng.choice(sorted(BASE_TOPICS))
                question = rng.choice(BASE_TOPICS[topic]).format(n=rng.randrange(10_000, 99_999))
            if phase != "baseline":
                question = LONG_PREFIX + question
            yield Request(
                index=i,
                offset_seconds=t,
                phase=phase,
                user_id=f"user-{user:05d}",
                # a user's visit: sessions roll over every ~10% of the story
                session_id=f"s-{user:05d}-{int(10 * t / self.duration_seconds)}",
                topic=topic,
                question=question,
                input_tokens_base=_tokens(question),
                pairwise=rng.random() < PAIRWISE_RATE,
                quality_draw=rng.random(),
                quality_draw_b=rng.random(),
                feedback_draw=rng.random(),
                thumbs_draw=rng.random(),
                pii_draw=rng.random(),
                latency_draw=rng.gauss(0.0, 0.35),
                latency_draw_b=rng.gauss(0.0, 0.35),
                position_draw=rng.random(),
                choice_draw=rng.random(),
                bad_answer_index=rng.randrange(len(BAD_ANSWERS)),
            )
            i += 1


def good_probability(variant: str, model: str, phase: str) -> float:
    p = PROMPT_QUALITY.get(variant, PROMPT_QUALITY[CONTROL]) + MODEL_QUALITY_DELTA.get(model, 0.0)
    if phase == "incident":
        p *= INCIDENT_QUALITY_FACTOR
    return min(0.98, max(0.02, p))


def answer(req: Request, variant: str, model: str, *, second: bool = False) -> Answer:
    """The simulated model's answer to `req` under the prompt `variant` on `model`."""
    import math

    draw = req.quality_draw_b if second else req.quality_draw
    good = draw < good_probability(variant, model, req.phase)
    if good:
        text = good_answer(req.topic, req.question)
        if req.pii_draw < PII_RATE:
            text += PII_SUFFIX
        finish = "stop"
    else:
        text = BAD_ANSWERS[(req.bad_answer_index + (1 if second else 0)) % len(BAD_ANSWERS)]
        finish = "stop"
    tokens = _tokens(text)
    lat_draw = req.latency_draw_b if second else req.latency_draw
    latency = MEDIAN_LATENCY_SECONDS.get(model, 1.0) * math.exp(lat_draw) * (0.5 + tokens / 100.0)
    return Answer(model=model, text=text, good=good, output_tokens=tokens,
                  latency_seconds=round(latency, 4), finish_reason=finish)


def good_answer(topic: str, question: str) -> str:
    """The answer a good model gives to `question` of `topic` (what a reviewer would write)."""
    return GOOD_ANSWERS[topic].format(n=question.split("order ")[-1].split(" ")[0].rstrip("?"))


def _question_patterns() -> list[tuple[str, "re.Pattern[str]"]]:
    import re

    out = [(topic, re.compile(re.escape(q).replace(re.escape("{n}"), r"\d+")))
           for topic, questions in BASE_TOPICS.items() for q in questions]
    out += [(NEW_TOPIC, re.compile(re.escape(q))) for q in NEW_TOPIC_QUESTIONS]
    return out


def question_in(text: str) -> tuple[str, str] | None:
    """(topic, question) of the simulated question found in `text` (a prompt as the sidecar stores
    it: system and user messages), or None."""
    for topic, pattern in _question_patterns():
        m = pattern.search(text)
        if m:
            return topic, m.group(0)
    return None


def thumbs_up(req: Request, ans: Answer) -> bool | None:
    """None when the user gives no feedback; else whether they clicked thumbs up."""
    if req.feedback_draw >= FEEDBACK_RATE:
        return None
    return req.thumbs_draw < (0.85 if ans.good else 0.12)


def pairwise_choice(req: Request, first: Answer, second: Answer) -> int | None:
    """Index (0 = shown first, 1 = shown second) of the answer the user prefers; None for a tie."""
    if first.good != second.good:
        # users mostly (not always) pick the good answer
        prefers_good = req.choice_draw < 0.9
        good_index = 0 if first.good else 1
        return good_index if prefers_good else 1 - good_index
    # two alike answers: often a tie, else the position decides (a little bias to the first)
    if req.choice_draw < TIE_RATE:
        return None
    return 0 if (req.choice_draw - TIE_RATE) / (1 - TIE_RATE) < POSITION_BIAS else 1


def input_tokens(req: Request, variant: str) -> int:
    return req.input_tokens_base + SYSTEM_PROMPT_TOKENS.get(variant, SYSTEM_PROMPT_TOKENS[CONTROL])
