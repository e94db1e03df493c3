"""Each chapter's verdicts: the paper's claims judged on the chapter's measurements.

One module per chapter (``training`` for chapter 2 … ``sanity`` for chapter 10). Each has a
``claims(...) -> list[Verdict]`` that takes the chapter's measurements and returns its rows, built
with :func:`zfkit.verdicts.decide` / :func:`zfkit.verdicts.requires` and
:meth:`zfkit.results.Verdict.decided`, so that every row carries its noise, its threshold and
where that comes from, the threshold at which it would flip, and, when inconclusive, the budget
that would decide it. Measuring lives in the analysis modules (:mod:`zfkit.invariance`, …);
judging lives here, where a test per outcome can reach it. A claim's text is a constant of its
module, so that the ImageNet chapter (:mod:`zfkit.imagenet`) judges the very same sentence.
"""
