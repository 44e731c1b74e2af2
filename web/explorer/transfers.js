// dicom-xfer's extension of Orthanc Explorer (served in /plugins/explorer.js when dicom-xfer proxies an
// Orthanc): a "Transfers accelerator" button on the patient, study and series pages that sends the resource
// to a peer through ../transfers/send. Plain ES5 over the jQuery 1.7 / jQuery Mobile 1.x of Orthanc Explorer.
(function () {
  'use strict';

  // Page ID -> Level of the resource that the page shows.
  var LEVELS = { patient: 'Patient', study: 'Study', series: 'Series' };
  var BUTTON_CLASS = 'dicom-xfer-transfers';

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  // Puts the yellow button (theme "e") just before the page's "Delete" entry, once.
  function addButton(page) {
    var level = LEVELS[page.attr('id')];
    if (!level || page.find('.' + BUTTON_CLASS).length > 0) return;
    var del = page.find('#' + page.attr('id') + '-delete').closest('li');
    if (del.length === 0) return;
    var li = $('<li data-icon="forward" data-theme="e">').addClass(BUTTON_CLASS);
    li.append($('<a href="#">').attr('id', page.attr('id') + '-transfers').text('Transfers accelerator'));
    del.before(li);
    var list = del.closest('ul');
    // Before the page is created jQuery Mobile enhances the item with the list; afterwards it must be told.
    if (list.hasClass('ui-listview')) list.listview('refresh');
  }

  // Lists the peers with their transfers status; only "installed" and "bidirectional" ones can be chosen.
  function choosePeer(callback) {
    var peers;
    $.ajax({
      url: '../transfers/peers',
      dataType: 'json',
      async: false,
      cache: false,
      success: function (answer) { peers = answer; },
      error: function () { peers = undefined; }
    });
    if (!peers) {
      alert('Cannot list the Orthanc peers');
      return;
    }
    var chosen;
    var items = $('<ul data-role="listview" data-inset="true">');
    var names = Object.keys(peers).sort();
    if (names.length === 0) items.append($('<li>').text('No Orthanc peer is configured'));
    for (var i = 0; i < names.length; i++) {
      var name = names[i];
      var status = peers[name];
      var usable = status === 'installed' || status === 'bidirectional';
      var li = $('<li>').attr('data-peer', name).attr('data-status', status);
      var label = escapeHtml(name) + '<span class="ui-li-count">' + escapeHtml(status) + '</span>';
      if (usable) {
        li.addClass('dicom-xfer-peer');
        li.append($('<a href="#" rel="close">').html(label));
        li.click(function () { chosen = $(this).attr('data-peer'); });
      } else {
        li.addClass('ui-disabled dicom-xfer-peer-unusable').html(label);
      }
      items.append(li);
    }
    $('#dialog').simpledialog2({
      mode: 'blank',
      animate: false,
      headerText: 'Choose Orthanc peer',
      headerClose: true,
      forceInput: false,
      width: '100%',
      blankContent: items,
      callbackClose: function () {
        // The dialog is still on screen when this runs; act once it is gone.
        var timer = setInterval(function () {
          if (!$('#dialog').is(':visible')) {
            clearInterval(timer);
            if (chosen !== undefined) callback(chosen);
          }
        }, 100);
      }
    });
  }

  function send(level, id, peer) {
    $.ajax({
      url: '../transfers/send',
      type: 'POST',
      contentType: 'application/json',
      data: JSON.stringify({ Resources: [{ Level: level, ID: id }], Compression: 'gzip', Peer: peer }),
      dataType: 'json',
      cache: false,
      success: function (job) {
        // Push mode answers the local job; in pull mode the job runs on the peer and nothing is shown.
        if (job && job.ID) window.location.assign('explorer.html#job?uuid=' + job.ID);
      },
      error: function () {
        alert('Error while creating the transfer job');
      }
    });
  }

  $(document).on('pagebeforecreate pagebeforeshow', '#patient, #study, #series', function () {
    addButton($(this));
  });

  $(document).on('click', '.' + BUTTON_CLASS + ' a', function (e) {
    e.preventDefault();
    var page = $(this).closest('[data-role="page"]');
    var level = LEVELS[page.attr('id')];
    var id = $.mobile.pageData && $.mobile.pageData.uuid;
    if (!level || !id) return;
    choosePeer(function (peer) { send(level, id, peer); });
  });
})();
