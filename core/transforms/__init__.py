"""Content-changing and content-reading steps a flow template runs on a file, each pure and streaming:
it reads a binary stream, writes a binary stream (or derived files), returns what it learnt, and
raises one error type per kind of refusal. No Prefect here: templates wrap these as tasks.

* `compression`: gzip and zip, both ways, with zip-bomb limits (`DecompressLimits`).
* `edi_route`: an X12 / EDIFACT file's envelope values, and the destination a rule table gives them.
"""
