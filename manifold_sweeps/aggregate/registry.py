"""Which reducers and summaries the aggregation runs, in order (add new tables here)."""

from . import alignment, effective_rank
from .reducers import Reducer, Summary

REDUCERS: list[Reducer] = [effective_rank.REDUCER]
SUMMARIES: list[Summary] = [effective_rank.SUMMARY, alignment.SUMMARY]
