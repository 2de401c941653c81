#!/usr/bin/python3
"""A pass-through FUSE file system whose write(2) fails with EIO on demand.

    eio_fs.py BACKING MOUNTPOINT CONTROL

Mirrors BACKING at MOUNTPOINT (in the foreground; unmount to stop). While the
file CONTROL exists, every write(2) of file data answers EIO, as efivarfs
does when the firmware's SetVariable() reports EFI_DEVICE_ERROR; everything
else passes through. The faults test (tests/cli/faults_test.cpp) mounts it as
an efivars directory in a private mount namespace. Needs python3-fuse."""
import errno
import os
import sys

import fuse

fuse.fuse_python_api = (0, 2)


class Handle:
    """An open file (fuse-python takes a returned int for an error code)."""

    def __init__(self, fd):
        self.fd = fd


class EioFs(fuse.Fuse):
    def __init__(self, backing, control, *args, **kw):
        super().__init__(*args, **kw)
        self.backing = backing
        self.control = control

    def _p(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def getattr(self, path):
        return os.lstat(self._p(path))

    def readdir(self, path, offset):
        for name in [".", ".."] + os.listdir(self._p(path)):
            yield fuse.Direntry(name)

    def readlink(self, path):
        return os.readlink(self._p(path))

    def statfs(self):
        return os.statvfs(self.backing)

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            return -errno.EACCES

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def link(self, target, name):
        os.link(self._p(target), self._p(name))

    def symlink(self, target, name):
        os.symlink(target, self._p(name))

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def truncate(self, path, size):
        os.truncate(self._p(path), size)

    def utimens(self, path, ts_acc, ts_mod):
        os.utime(self._p(path), ns=(ts_acc.tv_sec * 10**9 + ts_acc.tv_nsec, ts_mod.tv_sec * 10**9 + ts_mod.tv_nsec))

    def create(self, path, flags, mode):
        return Handle(os.open(self._p(path), flags | os.O_CREAT, mode))

    def open(self, path, flags):
        return Handle(os.open(self._p(path), flags))

    def read(self, path, size, offset, fh):
        return os.pread(fh.fd, size, offset)

    def write(self, path, data, offset, fh):
        if os.path.exists(self.control):
            return -errno.EIO
        return os.pwrite(fh.fd, data, offset)

    def ftruncate(self, path, size, fh):
        os.ftruncate(fh.fd, size)

    def fgetattr(self, path, fh):
        return os.fstat(fh.fd)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh.fd)

    # No fsyncdir: libfuse answers ENOSYS, which the kernel takes as "nothing
    # to do" from then on (fuse-python's own fsyncdir reply fails the call).

    def release(self, path, flags, fh):
        os.close(fh.fd)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: eio_fs.py BACKING MOUNTPOINT CONTROL")
    backing, mountpoint, control = sys.argv[1:]
    fs = EioFs(os.path.abspath(backing), os.path.abspath(control), dash_s_do="setsingle")
    fs.fuse_args.mountpoint = mountpoint
    fs.fuse_args.setmod("foreground")
    fs.fuse_args.add("default_permissions")
    fs.fuse_args.add("nonempty")  # over a test directory that has files: they are hidden
    fs.multithreaded = False
    fs.main()


if __name__ == "__main__":
    main()
