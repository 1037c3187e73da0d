"""Sorting an email's attachments: photos (any image type), files the allow-list keeps,
and the rest refused (named in the message's note)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server.errors import InvalidInput
from server.intake.mailparse import Attachment
from server.intake.photos import MAX_PHOTO_BYTES, MAX_PHOTOS, Photo, clean_photo
from server.intake.policy import IntakePolicy
from server.models import JobFile, JobPhoto

MAX_FILES = 10


@dataclass(frozen=True)
class Sorted:
    photos: tuple[Photo, ...]
    files: tuple[Attachment, ...]
    refused: tuple[str, ...]  # what was not kept, and why

    @property
    def note(self) -> str:
        return ("attachments not kept: " + "; ".join(self.refused)) if self.refused else ""


def sort_attachments(attachments: tuple[Attachment, ...], policy: IntakePolicy) -> Sorted:
    photos: list[Photo] = []
    files: list[Attachment] = []
    refused: list[str] = []
    for attachment in attachments:
        label = f"{attachment.filename} ({attachment.content_type})"
        if attachment.content_type.startswith("image/"):
            if len(photos) >= MAX_PHOTOS:
                refused.append(f"{label}: more than {MAX_PHOTOS} photos")
                continue
            try:
                photos.append(clean_photo(attachment.filename, attachment.data))
            except InvalidInput as exc:
                refused.append(exc.message)
        elif not policy.keeps(attachment.content_type):
            refused.append(f"{label}: this type is not accepted")
        elif len(files) >= MAX_FILES or len(attachment.data) > MAX_PHOTO_BYTES:
            refused.append(f"{label}: too many or too large files")
        else:
            files.append(attachment)
    return Sorted(tuple(photos), tuple(files), tuple(refused))


def attach(session: Session, job_id: int, inbound_id: int, found: Sorted,
           with_photos: bool) -> None:
    """Store the kept files (and, for a reply, the photos) on the job."""
    for photo in found.photos if with_photos else ():
        session.add(JobPhoto(job_id=job_id, content_type=photo.content_type, filename=photo.filename,
                             size=len(photo.data), sha256=photo.sha256, data=photo.data))
    for file in found.files:
        session.add(JobFile(job_id=job_id, inbound_id=inbound_id, content_type=file.content_type[:100],
                            filename=file.filename.replace("\\", "/").rsplit("/", 1)[-1][:200],
                            size=len(file.data), sha256=hashlib.sha256(file.data).hexdigest(),
                            data=file.data))
