"""Generated box names, docker style: adjective_noun."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
    "merry", "nimble", "proud", "quick", "quiet", "sharp", "shy", "swift", "tidy", "witty",
)
NOUNS = (
    "badger", "crane", "dingo", "eagle", "ferret", "gecko", "heron", "ibis", "jackal", "koala",
    "lemur", "marten", "newt", "otter", "panda", "quail", "raven", "stoat", "tapir", "wombat",
)


def random_name() -> str:
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NOUNS)}_{secrets.token_hex(2)}"
