"""Pictures and pages: figures and overlays (:mod:`.plotting`, :mod:`.overlays`) and HTML/Markdown reports (:mod:`.report`)."""
