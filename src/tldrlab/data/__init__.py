"""Data: record and thread models, readers for every supported format, sentences with character offsets.

- `records`: `SummaryRecord` (document -> reference summaries, optional highlight labels, provenance).
- `threads`: `Thread` and `Post` (forum threads with structure: answers, comments, accepted flags, scores).
- `sentences`: `split_sentences(text)` -> `Sentence`s whose `start:end` slice the text exactly.
- `html`: HTML -> text with a real parser (code blocks and quotes handled deliberately).
- `readers/`: one module per format, each registered in `readers.READERS`; `read_records`, `read_threads`
  (and `*_report` variants that also return what was skipped), `detect_format`.
- `inspect`: counts and length statistics behind `tldrlab data inspect`.
"""

from tldrlab.data.records import SummaryRecord
from tldrlab.data.sentences import Sentence, split_sentences
from tldrlab.data.threads import Post, Thread

__all__ = ["Post", "Sentence", "SummaryRecord", "Thread", "split_sentences"]
