"""The one definition of a mailbox: every door (REST, SFTP, FTP, AS2, data flows, the portal) reads it.

* `layout`  where homes, the store, staging and removed homes live on disk; reserved names;
* `access`  what each kind of login may do in each folder (a table: list, read, write, delete);
* `errors`  what a mailbox refuses, by kind;
* `homes`   a partner's places made empty at `partner add`, moved out of reach at `partner remove`;
* `staging` resumable uploads (SFTP, FTP), kept outside the home until complete;
* `view`, `user_view`  a partner's mailbox and an account user's home as one login's session sees
  them (what SFTP, FTP and the portal adapt); `doors` the ledgers every door of a process shares.

File names are checked by `core.intake.check_file_name` (over `core.names`), and every file is
taken in by `core.intake`'s one commit; logins are decided by `core.login`.
"""

from core.mailbox.access import Access, Action, LoginKind, access_of
from core.mailbox.layout import DOWNLOAD, FOLDERS, UPLOAD

__all__ = ["DOWNLOAD", "FOLDERS", "UPLOAD", "Access", "Action", "LoginKind", "access_of"]
