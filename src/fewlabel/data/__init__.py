"""Data: tables read from files (:mod:`.files`) and the labelled texts checked from them (:mod:`.labelled`)."""
