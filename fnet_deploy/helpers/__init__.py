"""Helpers every layer may use, importing no layered package: atomic file writes
(:mod:`.atomic`), the errors the CLI reports in one line (:mod:`.errors`), optional packages and
their extras (:mod:`.optional`), lazy package attributes (:mod:`.lazy`), signal handling
(:mod:`.signals`), the memory check before a run (:mod:`.memory`) and matplotlib figures
(:mod:`.figures`)."""
