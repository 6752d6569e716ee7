() => [document.querySelector('#fix').value, document.querySelector('#page-config').textContent]
