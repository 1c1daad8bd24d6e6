"""The papers' claims, measured and judged: ``rewind reproduce``.

Importing this package registers the claims (C1-C24): lottery_claims (C1-C7, C14, C22 on the
testbed preset), early_claims (C8, C11, C12, C16-C18), data_claims (C9, C10, C13, C15, C19-C21),
pai_claims (C23, C24).
"""
from . import data_claims, early_claims, lottery_claims, pai_claims  # noqa: F401  (registration)
from .registry import (CLAIMS, SHARED, Claim, Context, Measurement, claim_ids, register_claim, register_shared,
                       select_claims)
from .run import RULE, Reproduction, reproduce
from .verdict import HELD, INCONCLUSIVE, NOT_HELD, Test, combine, error_rates, judge, looks_for

__all__ = ["CLAIMS", "SHARED", "Claim", "Context", "Measurement", "claim_ids", "register_claim", "register_shared",
           "select_claims", "RULE", "Reproduction", "reproduce", "HELD", "INCONCLUSIVE", "NOT_HELD", "Test", "combine",
           "error_rates", "judge", "looks_for"]
