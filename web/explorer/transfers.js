// dicom-xfer's extension of Orthanc Explorer (served in /plugins/explorer.js when dicom-xfer proxies an
// Orthanc): a "Transfers accelerator" button on the patient, study and series pages that sends the resource
// to a peer through ../transfers/send, over the jQuery 1.7 / jQuery Mobile 1.x of Orthanc Explorer.
// The file is appended to the other plugins' scripts: its names live in this block (const, not function
// declarations, which a block of a plain script would leak), so nothing reaches Orthanc Explorer's globals.
{
  // Page ID -> Level of the resource that the page shows.
  const LEVELS = { patient: 'Patient', study: 'Study', series: 'Series' };
  const BUTTON_CLASS = 'dicom-xfer-transfers';

  const escapeHtml = (s) =>
    String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

  // Puts the yellow button (theme "e") just before the page's "Delete" entry, once.
  const addButton = (page) => {
    const pageId = page.attr('id');
    const level = LEVELS[pageId];
    if (!level || page.find(`.${BUTTON_CLASS}`).length > 0) return;
    const del = page.find(`#${pageId}-delete`).closest('li');
    if (del.length === 0) return;
    const li = $('<li data-icon="forward" data-theme="e">').addClass(BUTTON_CLASS);
    li.append($('<a href="#">').attr('id', `${pageId}-transfers`).text('Transfers accelerator'));
    del.before(li);
    const list = del.closest('ul');
    // Before the page is created jQuery Mobile enhances the item with the list; afterwards it must be told.
    if (list.hasClass('ui-listview')) list.listview('refresh');
  };

  // The peers with their transfers status, or undefined when they cannot be listed.
  const listPeers = () => {
    let peers;
    $.ajax({
      url: '../transfers/peers',
      dataType: 'json',
      async: false,
      cache: false,
      success: (answer) => {
        peers = answer;
      },
      error: () => {
        peers = undefined;
      },
    });
    return peers;
  };

  // One peer of the dialog's list; only "installed" and "bidirectional" ones can be chosen (`choose(name)`).
  const peerItem = (name, status, choose) => {
    const usable = status === 'installed' || status === 'bidirectional';
    const li = $('<li>').attr('data-peer', name).attr('data-status', status);
    const label = `${escapeHtml(name)}<span class="ui-li-count">${escapeHtml(status)}</span>`;
    if (usable) {
      li.addClass('dicom-xfer-peer');
      li.append($('<a href="#" rel="close">').html(label));
      li.click(() => choose(name));
    } else {
      li.addClass('ui-disabled dicom-xfer-peer-unusable').html(label);
    }
    return li;
  };

  // Lists the peers in a dialog; `callback(peer)` once the dialog is closed on a usable one.
  const choosePeer = (callback) => {
    const peers = listPeers();
    if (!peers) {
      alert('Cannot list the Orthanc peers');
      return;
    }
    let chosen;
    const items = $('<ul data-role="listview" data-inset="true">');
    const names = Object.keys(peers).sort();
    if (names.length === 0) items.append($('<li>').text('No Orthanc peer is configured'));
    for (const name of names) {
      items.append(
        peerItem(name, peers[name], (peer) => {
          chosen = peer;
        }),
      );
    }
    $('#dialog').simpledialog2({
      mode: 'blank',
      animate: false,
      headerText: 'Choose Orthanc peer',
      headerClose: true,
      forceInput: false,
      width: '100%',
      blankContent: items,
      callbackClose: () => {
        // The dialog is still on screen when this runs; act once it is gone.
        const timer = setInterval(() => {
          if (!$('#dialog').is(':visible')) {
            clearInterval(timer);
            if (chosen !== undefined) callback(chosen);
          }
        }, 100);
      },
    });
  };

  const send = (level, id, peer) => {
    $.ajax({
      url: '../transfers/send',
      type: 'POST',
      contentType: 'application/json',
      data: JSON.stringify({ Resources: [{ Level: level, ID: id }], Compression: 'gzip', Peer: peer }),
      dataType: 'json',
      cache: false,
      success: (job) => {
        // Push mode answers the local job; in pull mode the job runs on the peer and nothing is shown.
        if (job?.ID) window.location.assign(`explorer.html#job?uuid=${job.ID}`);
      },
      error: () => {
        alert('Error while creating the transfer job');
      },
    });
  };

  // jQuery gives the page or the clicked link as `this`: these two stay functions.
  $(document).on('pagebeforecreate pagebeforeshow', '#patient, #study, #series', function () {
    addButton($(this));
  });

  $(document).on('click', `.${BUTTON_CLASS} a`, function (e) {
    e.preventDefault();
    const page = $(this).closest('[data-role="page"]');
    const level = LEVELS[page.attr('id')];
    const id = $.mobile.pageData?.uuid;
    if (!level || !id) return;
    choosePeer((peer) => send(level, id, peer));
  });
}
