"""One child across agencies: a master patient index in the manner of HAPI's MDM.

Each agency keeps its own Patient (its source record); the server links the source records of one
child to a server-managed golden Patient (``model``) automatically on a shared national identifier
(``linker``, called from the write path through ``hooks``) and through a data steward's review for
probable matches (``scoring``). The golden record's content is derived from its sources (``golden``).
"""
