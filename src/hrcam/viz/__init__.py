"""Pictures and pages: figures and overlays (:mod:`.plotting`), the demo gallery (:mod:`.gallery`), Markdown reports (:mod:`.report`)."""
