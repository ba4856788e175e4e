"""Ctrl/Cmd+Enter in the panel's prompt box sends the prompt.

ipywidgets 8 has no key events for a ``Textarea`` (``Text`` has Enter only),
and ``ipyevents`` would be a new dependency. So the panel carries one
``application/javascript`` output (in an ``Output`` widget) that installs a
single window-level key handler. On Ctrl/Cmd+Enter inside a prompt box it
appends ``SEND_MARKER`` to the text and fires the box's ``input`` event; the
kernel sees the value end with the marker, strips it and sends.

Why a marker and not a click on Send: ipywidgets throttles state updates per
model (one in flight, the rest buffered until the kernel is idle) while a
button's click message goes out at once, so a click could overtake the last
keystrokes. The marker travels in the same value update as the text, so the
kernel always sends the text the person saw.

The same script makes a click on a returned image in the transcript toggle
its full size: the transcript shows such images at most
``TRANSCRIPT_IMAGE_HEIGHT`` high (``_panel_sink``) through the output's
``width``/``height`` attributes; the click takes them off, and puts them back.

Front ends that do not run JavaScript outputs from the kernel (or notebooks
reopened untrusted) simply keep Enter as a newline and the images bounded: the
Send button works everywhere, and ``panel.result.images`` (or Export) has the
full images.
"""

from __future__ import annotations

__all__ = ["KEY_SCRIPT", "PROMPT_CLASS", "REPLY_CLASS", "SEND_MARKER", "key_output"]

SEND_MARKER = "\u2063"
"""INVISIBLE SEPARATOR: appended by the key handler, never typed by a person."""
PROMPT_CLASS = "chatimg-prompt"
REPLY_CLASS = "chatimg-reply"
"""The transcript's reply entries (``_panel_sink.new_entry``)."""

_KEY_SCRIPT = """
(function () {
  if (window.__chatimgKeys) { return; }
  window.__chatimgKeys = true;
  window.addEventListener('keydown', function (event) {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey) || event.isComposing) { return; }
    var target = event.target;
    if (!target || target.tagName !== 'TEXTAREA' || !target.closest) { return; }
    if (!target.closest('.CLASS')) { return; }
    event.preventDefault();
    event.stopPropagation();
    target.value = target.value + 'MARKER';
    target.dispatchEvent(new Event('input', {bubbles: true}));
  }, true);
  window.addEventListener('click', function (event) {
    var img = event.target;
    if (!img || img.tagName !== 'IMG' || !img.closest || !img.closest('.REPLY')) { return; }
    var saved = img.dataset.chatimgSize;
    if (saved === undefined) {
      if (!img.hasAttribute('width') && !img.hasAttribute('height')) { return; }
      img.dataset.chatimgSize = JSON.stringify(
        [img.getAttribute('width'), img.getAttribute('height')]);
      img.removeAttribute('width');
      img.removeAttribute('height');
    } else {
      var size = JSON.parse(saved);
      if (size[0] !== null) { img.setAttribute('width', size[0]); }
      if (size[1] !== null) { img.setAttribute('height', size[1]); }
      delete img.dataset.chatimgSize;
    }
  });
})();
"""
KEY_SCRIPT = (
    _KEY_SCRIPT.replace("CLASS", PROMPT_CLASS)
    .replace("REPLY", REPLY_CLASS)
    .replace("MARKER", "\\u2063")
)


def key_output() -> dict[str, object]:
    """The ``display_data`` output that installs the handler (shows nothing)."""
    return {
        "output_type": "display_data",
        "data": {"application/javascript": KEY_SCRIPT, "text/plain": ""},
        "metadata": {},
    }
