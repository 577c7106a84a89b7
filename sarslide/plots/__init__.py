"""The book's figures. Each function draws on a given (or new) matplotlib Axes/Figure
and returns it; nothing here computes what the figure shows (that lives upstream).

Submodules by chapter: :mod:`.data` (cubes and chips), :mod:`.training` (learning
curves, embeddings, predictions), :mod:`.evaluation` (the paper's figures), :mod:`.maps`
(area-wide maps and heatmaps).
"""
