"""The login's folders: a partner's home with `download` and `upload` inside it; an account user's
home with `b2b` inside it, whose children are the account's outboxes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.bodies import BoundedBodyRoute
from api.deps import PageDep, SpaceDep
from api.models import FileResource, FolderResource, ResourceList

router = APIRouter(prefix="/folders", tags=["folders"], route_class=BoundedBodyRoute)

NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {"description": "another partner's folder"},
    404: {"description": "no such folder"},
}


@router.get("", response_model_exclude_none=True)
def list_folders(space: SpaceDep, page: PageDep) -> ResourceList[FolderResource]:
    """List the login's top-level folders: its home folder."""
    folders = [space.home]
    return ResourceList[FolderResource](
        total_results=len(folders),
        start_index=page.start_index,
        count=len(page.of(folders)),
        resources=[space.folder_resource(f) for f in page.of(folders)],
    )


@router.get("/{folder_id}", response_model_exclude_none=True, responses=NOT_YOURS)
def get_folder(folder_id: str, space: SpaceDep) -> FolderResource:
    """Get one folder."""
    return space.folder_resource(space.folder(folder_id))


@router.get("/{folder_id}/children", response_model_exclude_none=True, responses=NOT_YOURS)
def list_children(folder_id: str, space: SpaceDep, page: PageDep) -> ResourceList[FolderResource]:
    """List the folders inside a folder: `download` and `upload` inside a partner's home; `b2b`
    inside an account user's home, and the account's outboxes inside `b2b`."""
    children = space.children(space.folder(folder_id))
    shown = page.of(children)
    return ResourceList[FolderResource](
        total_results=len(children),
        start_index=page.start_index,
        count=len(shown),
        resources=[space.folder_resource(f) for f in shown],
    )


@router.get("/{folder_id}/files", response_model_exclude_none=True, responses=NOT_YOURS)
def list_files(folder_id: str, space: SpaceDep, page: PageDep) -> ResourceList[FileResource]:
    """List the files in a folder, by name."""
    folder = space.folder(folder_id)
    infos = space.list_files(folder)
    shown = page.of(infos)
    return ResourceList[FileResource](
        total_results=len(infos),
        start_index=page.start_index,
        count=len(shown),
        resources=space.file_resources(folder, shown),
    )
